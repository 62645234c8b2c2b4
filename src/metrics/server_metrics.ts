/**
 * The metrics `/metrics` shows: connections, handshake latency, close codes, race violations
 * by kind, runs (by status, and by provider and outcome), model tokens, time to a run's first
 * reply piece, delivered events and dependency status.
 *
 * @module
 */
import { Counter, Gauge, Histogram, MetricsRegistry } from "./metrics_registry.ts";

/** Sources read when `/metrics` is rendered. */
export interface MetricsSources {
  /** Open connections right now. */
  readonly openConnections: () => number;
  /** Race violations by kind. */
  readonly raceViolations: () => Iterable<[string, number]>;
  /** Each dependency: 1 up, 0 down. */
  readonly dependencies: () => Iterable<[string, boolean]>;
  /** Runs in flight on this instance. */
  readonly activeRuns: () => number;
}

/** Every metric of one process. */
export class ServerMetrics {
  readonly registry = new MetricsRegistry();
  readonly connectionsTotal = this.registry.register(
    new Counter("agentsocket_connections_total", "WebSocket upgrades accepted"),
  );
  readonly handshakeSeconds = this.registry.register(
    new Histogram(
      "agentsocket_handshake_seconds",
      "Time from socket open to ready",
      [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    ),
  );
  readonly closeCodes = this.registry.register(
    new Counter("agentsocket_connection_close_total", "Connections closed, by close code"),
  );
  readonly runsTotal = this.registry.register(
    new Counter("agentsocket_runs_total", "Runs started and ended on this instance, by status"),
  );
  readonly eventsDelivered = this.registry.register(
    new Counter("agentsocket_events_delivered_total", "Event frames sent to clients"),
  );
  readonly runOutcomes = this.registry.register(
    new Counter(
      "agentsocket_run_outcomes_total",
      "Runs ended on this instance, by the agent's provider and outcome (the status, or the failure code)",
    ),
  );
  readonly tokens = this.registry.register(
    new Counter(
      "agentsocket_model_tokens_total",
      "Model tokens of ended runs, by provider and direction (input, output)",
    ),
  );
  readonly firstPieceSeconds = this.registry.register(
    new Histogram(
      "agentsocket_first_piece_seconds",
      "Time from a run's start to its first published reply piece",
      [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    ),
  );

  constructor(sources: MetricsSources) {
    this.registry.register(
      new Gauge("agentsocket_connections_open", "Open WebSocket connections", () => [
        [undefined, sources.openConnections()],
      ]),
    );
    this.registry.register(
      new Gauge(
        "agentsocket_race_violations_total",
        "Timing violations caught by the RaceConditionDetector, by kind",
        () => [...sources.raceViolations()].map(([kind, n]) => [{ kind }, n]),
        "counter",
      ),
    );
    this.registry.register(
      new Gauge("agentsocket_runs_active", "Runs in flight on this instance", () => [
        [undefined, sources.activeRuns()],
      ]),
    );
    this.registry.register(
      new Gauge(
        "agentsocket_dependency_up",
        "1 when the dependency answers",
        () => [...sources.dependencies()].map(([dependency, up]) => [{ dependency }, up ? 1 : 0]),
      ),
    );
    for (const status of ["started", "completed", "failed", "cancelled"]) {
      this.runsTotal.declare({ status });
    }
    this.closeCodes.declare({ code: "1011" });
  }

  /**
   * Counts a run's end by provider and outcome, and its tokens.
   *
   * @param report The provider, status, failure code and usage of the run.
   */
  recordRunEnd(
    report: {
      readonly provider: string;
      readonly status: string;
      readonly code?: string;
      readonly usage?: { readonly inputTokens: number; readonly outputTokens: number };
    },
  ): void {
    const { provider } = report;
    this.runOutcomes.inc({ provider, outcome: report.code ?? report.status });
    if (report.usage) {
      this.tokens.inc({ provider, direction: "input" }, report.usage.inputTokens);
      this.tokens.inc({ provider, direction: "output" }, report.usage.outputTokens);
    }
  }

  /** The Prometheus text. */
  render(): string {
    return this.registry.render();
  }
}
