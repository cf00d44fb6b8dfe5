"""Gates: the gate protocol, the generic runner that does all bus work, and the gate plugins."""
