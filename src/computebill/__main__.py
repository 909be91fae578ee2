from computebill.cli import main

main()
