"""Test support shared by test areas (scripted provider)."""
