"""One thin script per experiment: ``python -m experiments.<name> --help``."""
