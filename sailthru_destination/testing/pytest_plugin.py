"""pytest plugin: the ``fake_sailthru`` fixture for every project that installs the package."""
