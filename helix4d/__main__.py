from helix4d.cli import main

main()
