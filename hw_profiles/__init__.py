"""Built-in chip profiles (installed as ``neurosim.hw_profiles``): one TOML file per chip."""
