"""bentos"""
