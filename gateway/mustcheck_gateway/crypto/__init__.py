"""The gateway's crypto suites (:mod:`.suites`): what signs, encrypts and keys a deployment's audit log."""
