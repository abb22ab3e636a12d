package alert

// Wake tells every receiver's worker to look at the outbox now: for rows
// another component enqueued (a period's report), which would otherwise
// wait for the next alert transition. Safe for concurrent use.
func (d *Dispatcher) Wake() { d.wakeAll() }
