using Srlm.Cli.Serving;

namespace Srlm.Cli.Commands;

/// <summary>srlm serve --model DIR (or --checkpoint RUN/mN, a checkpoint of the configured store): the OpenAI-compatible
/// HTTP API over one checkpoint (see README "Evaluate with your own tools"). Prints "listening on URL" once it accepts
/// requests; Ctrl-C stops it.</summary>
public sealed class ServeCommand : ICommand
{
    public string Name => "serve";
    public string Summary => "serve the checkpoint folder --model (or a stored --checkpoint RUN/mN) over an OpenAI-compatible HTTP API (127.0.0.1:8000 by default)";

    public async Task<int> RunAsync(string[] args, CancellationToken cancel)
    {
        var a = new Args(args);
        var dir = a.Get("--model");
        var checkpoint = a.Get("--checkpoint");
        var store = a.Get("--store");
        var host = a.Get("--host") ?? "127.0.0.1";
        int port = a.Int("--port", 8000);
        var name = a.Get("--name");
        var key = a.Get("--api-key");
        var keyEnv = a.Get("--api-key-env");
        int maxQueue = a.Int("--max-queue", 256);
        var dtypeText = a.Get("--dtype");
        var dtype = dtypeText is null ? TorchSharp.torch.ScalarType.Float32
            : ModelDtype.TryParse(dtypeText) ?? throw new UsageException($"option --dtype must be one of {string.Join(", ", ModelDtype.Names)}, got '{dtypeText}'");
        a.EnsureAllRead();
        if (a.Positional.Count > 0) throw new UsageException($"unexpected argument '{a.Positional[0]}'");
        if ((dir is null) == (checkpoint is null)) throw new UsageException("give --model DIR (a checkpoint folder) or --checkpoint RUN/mN (a checkpoint of the configured store)");
        if (store is not null && checkpoint is null) throw new UsageException("--store goes with --checkpoint");
        if (dir is not null && !Directory.Exists(dir)) throw new UsageException($"--model {dir}: no such directory");
        if (port is < 0 or > 65535) throw new UsageException($"option --port must be between 0 and 65535, got {port}");
        if (maxQueue < 1) throw new UsageException($"option --max-queue must be at least 1, got {maxQueue}");
        if (host != "localhost" && !System.Net.IPAddress.TryParse(host, out _)) throw new UsageException($"option --host must be an IP address or localhost, got '{host}'");
        if (key is not null && keyEnv is not null) throw new UsageException("give --api-key or --api-key-env, not both");
        if (keyEnv is not null)
        {
            key = Environment.GetEnvironmentVariable(keyEnv);
            if (string.IsNullOrEmpty(key)) throw new UsageException($"--api-key-env {keyEnv}: the environment variable is not set");
        }
        if (key is { Length: 0 }) throw new UsageException("--api-key is empty");
        if (checkpoint is not null)
        {
            // A checkpoint of the store SRLM_STORE / SRLM_CHECKPOINTS (or --store) names, materialised into a local folder.
            await using var env = OpsEnvironment.Open(store);
            if (await env.Store.GetAsync<Srlm.Storage.CheckpointRecord>(checkpoint, cancel) is not { } record)
                throw new UsageException($"--checkpoint {checkpoint}: no such checkpoint in {env.Store.Location} (checkpoint ids are RUN/mN, e.g. from `srlm lineage RUN`)");
            dir = await env.Stores.Checkpoints.MaterializeAsync(checkpoint, record.Files, cancel);
            name ??= checkpoint.Split('/')[^1];
        }
        name ??= Path.GetFileName(Path.GetFullPath(dir!).TrimEnd(Path.DirectorySeparatorChar));

        ServedModel model;
        try { model = await ServedModel.LoadAsync(name, dir!, cancel, dtype); }
        catch (CheckpointException e)
        {
            Console.Error.WriteLine($"srlm serve: {e.Message}");
            return 1;
        }
        using (model)
        {
            await using var server = new OpenAiServer(model, name, new ServeOptions { Host = host, Port = port, ApiKey = key, MaxQueue = maxQueue }, Console.Out);
            try { await server.StartAsync(cancel); }
            catch (IOException e)
            {
                Console.Error.WriteLine($"srlm serve: cannot listen on {host}:{port}: {e.Message.Split('\n')[0]}");
                return 1;
            }
            Console.Out.WriteLine($"srlm serve: model {name} ({checkpoint ?? dir}) on {Srlm.Model.TorchRuntime.Describe(Srlm.Model.TorchRuntime.Device)}, listening on {server.Address}{(key is null ? "" : " (bearer key required)")}");
            Console.Out.Flush();
            try { await Task.Delay(Timeout.Infinite, cancel); }
            catch (OperationCanceledException) { }
            Console.Out.WriteLine("srlm serve: stopping");
            return 0;
        }
    }
}
