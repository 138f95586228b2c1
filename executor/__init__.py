"""asmopt.executor"""
