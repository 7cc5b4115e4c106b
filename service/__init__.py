"""The running package's parts, each owning one thing; ``runtime.AuthRuntime`` wires them."""
