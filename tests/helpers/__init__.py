"""Code the tests call (data generators, tiny configs, subprocess scripts); no tests here."""
