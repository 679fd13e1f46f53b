"""Model definitions: the EEE pretraining towers and the downstream classifiers (import the submodules directly)."""
