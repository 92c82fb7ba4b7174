from p2pbak.cli import main

main()
