from smsgw.cli import main

main()
