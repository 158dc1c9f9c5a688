from incriminate.cli.main import main

main()
