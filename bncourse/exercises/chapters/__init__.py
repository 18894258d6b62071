"""Exercises that belong to one chapter, defined in the package so that their feedback is unit-tested."""
