"""incriminate: incrimination via distillation.

Distill a possibly misaligned, audit-evading teacher into students that are easier to audit,
audit the students, and decide against students of benign control teachers whether the evidence
incriminates the teacher.
"""

__version__ = "0.1.0"
