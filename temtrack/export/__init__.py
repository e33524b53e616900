"""What users publish: annotated movies (and, beside them, figures and reports)."""
