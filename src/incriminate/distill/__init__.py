"""Distillation: the methods (one file each, registered in `methods.METHODS`), the pure losses
they share, data selections, transforms and the teacher cache.

Importing the package registers the built-in methods, in this order; a new method in the
package is its own file plus one import here."""

# isort: off
from incriminate.distill import sft
from incriminate.distill import logit
from incriminate.distill import on_policy
from incriminate.distill import dpo

# isort: on

__all__ = ["dpo", "logit", "on_policy", "sft"]
