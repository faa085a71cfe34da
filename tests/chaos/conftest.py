"""The chaos suite: seeded scenarios with continuous monitors (see ``runner.py``)."""
