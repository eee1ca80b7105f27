pytest_plugins = [
    "tests.harness.broker",
    "tests.harness.micropython",
    "tests.harness.databases",
    "tests.harness.collector",
]
