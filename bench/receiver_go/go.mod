module webhook-operator.dev/bench/receiver

go 1.22
