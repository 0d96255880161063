from storymesh.cli import main

main()
