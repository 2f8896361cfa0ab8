package bench;

import java.util.Map;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.function.Supplier;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;

/**
 * The Kafka Streams contenders of the benchmark harness: {@code java bench.Main KIND [GUARANTEE]},
 * KIND one of forward, window, join, fraud; GUARANTEE at_least_once (default) or exactly_once_v2
 * (or the environment variable BENCH_KS_GUARANTEE). Topics, group and state folder come from the
 * harness's BENCH_* variables (benchmarks/env.py).
 */
public final class Main {
    private static final Map<String, Supplier<Topology>> APPS = Map.of(
        "forward", ForwardApp::topology,
        "window", WindowApp::topology,
        "join", JoinApp::topology,
        "fraud", FraudApp::topology);

    private Main() {}

    public static void main(String[] args) throws InterruptedException {
        if (args.length < 1 || !APPS.containsKey(args[0])) {
            System.err.println("usage: bench.Main forward|window|join|fraud [at_least_once|exactly_once_v2]");
            System.exit(2);
        }
        String guarantee = args.length > 1 ? args[1] : System.getenv().getOrDefault("BENCH_KS_GUARANTEE", StreamsConfig.AT_LEAST_ONCE);
        if (!guarantee.equals(StreamsConfig.AT_LEAST_ONCE) && !guarantee.equals(StreamsConfig.EXACTLY_ONCE_V2)) {
            System.err.println("bench.Main: processing guarantee must be at_least_once or exactly_once_v2, not " + guarantee);
            System.exit(2);
        }
        Properties props = new Properties();
        props.put(StreamsConfig.APPLICATION_ID_CONFIG, Env.get("BENCH_GROUP"));
        props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, Env.get("BENCH_BOOTSTRAP", "127.0.0.1:9092"));
        props.put(StreamsConfig.STATE_DIR_CONFIG, Env.get("BENCH_STATE_DIR", "/tmp/bench-kstreams"));
        props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, guarantee);
        props.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        if (args[0].equals("join")) {
            // a left join's unmatched records are looked for at most once per this many ms of wall
            // clock (default 1000): the last records of a finite input would leave the payments
            // whose bound they close unreported until more traffic comes; 0 = on every record
            props.put(StreamsConfig.InternalConfig.EMIT_INTERVAL_MS_KSTREAMS_OUTER_JOIN_SPURIOUS_RESULTS_FIX, 0L);
        }
        // everything else at Kafka Streams' defaults (one stream thread, commit every 30 s
        // at-least-once / 100 ms exactly-once, 10 MB record cache), as a user starts it
        KafkaStreams streams = new KafkaStreams(APPS.get(args[0]).get(), props);
        CountDownLatch done = new CountDownLatch(1);
        streams.setUncaughtExceptionHandler(e -> {
            e.printStackTrace();
            done.countDown();
            return org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            streams.close();
            done.countDown();
        }));
        streams.start();
        done.await();
        streams.close();
    }
}
