import transforms  # noqa: F401  (the FnApiRunner short name on Beam 2.62)
