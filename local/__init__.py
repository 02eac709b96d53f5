"""Running the program and its releases on this machine: rendering under mocks, playing as processes."""
