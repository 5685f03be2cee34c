"""The login-node daemon: pulls jobs from the central api and runs them on the site."""
