def main() -> None:
    print("asmopt")
