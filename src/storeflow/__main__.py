from storeflow.cli import main

main()
