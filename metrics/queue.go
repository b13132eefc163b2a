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
// from a queue's tasks to its target's downstream metrics. A queue has one
// such series: resolving it with another target (a reload moved it)
// replaces the old one, which would make that join match twice.
func (m *Metrics) Queue(queue, target string) *QueueMetrics {
	m = m.orDetached()
	queue, target = labelValue(queue), labelValue(target)
	m.setInfo(queue, target)
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

// ForgetQueue drops the series that tell a queue's present state,
// relay_queue_backlog, relay_tasks_in_flight and relay_work_queue_info,
// once the configuration no longer has the queue: a scrape then stops
// reporting a backlog nobody reads any more, and an autoscaler stops
// acting on it. Its counters and histograms stay until the process ends,
// as counters do. Children resolved before keep working, detached: a
// removed queue draining its last tasks updates nothing a scrape sees,
// and a queue of that name added again later starts afresh.
func (m *Metrics) ForgetQueue(queue string) {
	if m == nil {
		return
	}
	queue = labelValue(queue)
	m.queueBacklog.DeleteLabelValues(queue)
	m.inFlight.DeleteLabelValues(queue)
	m.setInfo(queue, "")
}

// setInfo makes target the one relay_work_queue_info series of queue, or
// takes its series away for "".
func (m *Metrics) setInfo(queue, target string) {
	m.infoMu.Lock()
	defer m.infoMu.Unlock()
	if old, ok := m.infoTarget[queue]; ok && old != target {
		m.queueInfo.DeleteLabelValues(queue, old)
		delete(m.infoTarget, queue)
	}
	if target != "" {
		m.queueInfo.WithLabelValues(queue, target).Set(1)
		m.infoTarget[queue] = target
	}
}
