from webhook_operator.cli import main

main()
