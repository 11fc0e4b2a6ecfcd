"""The shipped scenarios, installed with durosim as package data; `durosim scenarios` lists
them."""
