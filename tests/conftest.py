pytest_plugins = [
    "tests.harness.broker",
    "tests.harness.micropython",
    "tests.harness.micropython_unix",
    "tests.harness.databases",
    "tests.harness.collector",
    "tests.harness.virtual_board",
    "tests.harness.long_runs",
]
