#: The name under which a scenario's summary line rides on its test report (so the
#: end-of-run summary sees it from any worker process of a parallel run).
SUMMARY_PROPERTY = "reliability_summary"
