"""asmopt.server"""
