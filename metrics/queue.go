package metrics

import "github.com/prometheus/client_golang/prometheus"

// Outcomes of a task, the outcome label of relay_tasks_total.
const (
	TaskReplied      = "replied"
	TaskDeadLettered = "dead_lettered"
	TaskRedelivered  = "redelivered"
	TaskRequeued     = "requeued"
	// TaskCompleted is a task its downstream answered that had no
	// reply_to to send the answer to.
	TaskCompleted = "completed"
)

// QueueMetrics are one work queue's metrics, resolved once by
// Metrics.Queue. Every field is set; updating them does not allocate.
type QueueMetrics struct {
	// Replied, Completed, DeadLettered, Redelivered and Requeued count
	// tasks by how they left the relay (relay_tasks_total{queue,outcome}):
	// answered to their reply_to, answered with no reply_to, sent to
	// <queue>.dlq, sent to a delay queue for a later redelivery, or given
	// back to the broker unfinished (shutdown, or the target's breaker
	// opening before the task reached it).
	Replied, Completed, DeadLettered, Redelivered, Requeued prometheus.Counter
	// Recounted counts tasks the broker delivered again after an earlier
	// delivery ended without an outcome (relay_redeliveries_total{queue}):
	// each is published back with its count of such deliveries.
	Recounted prometheus.Counter
	// Retries counts in-process retries (relay_task_retries_total{queue}).
	Retries prometheus.Counter
	// InFlight is the number of tasks delivered and not yet settled
	// (relay_tasks_in_flight{queue}).
	InFlight prometheus.Gauge
	// Duration observes seconds from delivery to ack
	// (relay_task_duration_seconds{queue}).
	Duration prometheus.Observer
}

// Queue resolves the metrics of the work queue named queue. target, the
// queue's downstream, is not a label of the task metrics (a queue has one
// target, so it would only multiply series); it is exposed once as
// relay_work_queue_info{queue,target} 1, which a query joins on queue to go
// from a queue's tasks to its target's downstream metrics.
func (m *Metrics) Queue(queue, target string) *QueueMetrics {
	m = m.orDetached()
	queue, target = labelValue(queue), labelValue(target)
	m.queueInfo.WithLabelValues(queue, target).Set(1)
	return &QueueMetrics{
		Replied:      m.tasks.WithLabelValues(queue, TaskReplied),
		Completed:    m.tasks.WithLabelValues(queue, TaskCompleted),
		Recounted:    m.recounted.WithLabelValues(queue),
		DeadLettered: m.tasks.WithLabelValues(queue, TaskDeadLettered),
		Redelivered:  m.tasks.WithLabelValues(queue, TaskRedelivered),
		Requeued:     m.tasks.WithLabelValues(queue, TaskRequeued),
		Retries:      m.taskRetries.WithLabelValues(queue),
		InFlight:     m.inFlight.WithLabelValues(queue),
		Duration:     m.taskTime.WithLabelValues(queue),
	}
}
