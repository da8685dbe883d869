"""Checks of watui's own code that no off-the-shelf tool makes (run by ``make lint``)."""
