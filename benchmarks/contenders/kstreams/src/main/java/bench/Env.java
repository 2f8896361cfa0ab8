package bench;

/** The harness's environment contract (benchmarks/env.py). */
final class Env {
    private Env() {}

    static String get(String name) {
        String value = System.getenv(name);
        if (value == null) {
            System.err.println("benchmark contender: environment variable " + name + " is not set");
            System.exit(2);
        }
        return value;
    }

    static String get(String name, String fallback) {
        String value = System.getenv(name);
        return value == null ? fallback : value;
    }
}
