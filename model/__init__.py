"""asmopt.model"""
