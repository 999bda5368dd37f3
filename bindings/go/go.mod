module webhook-notification/bindings/go

go 1.21
