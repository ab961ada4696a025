"""Running the platform on one machine (`make up`) and in the end-to-end tests."""
