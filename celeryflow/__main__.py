from celeryflow.cli import main

main()
