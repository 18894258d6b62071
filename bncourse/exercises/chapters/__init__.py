"""Code exercises of the chapters, defined in the package so that unit tests can check their feedback."""
