from haloterm.cli import main

main()
