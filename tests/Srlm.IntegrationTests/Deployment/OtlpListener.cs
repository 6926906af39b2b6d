using System.Collections.Concurrent;
using System.Net;

namespace Srlm.IntegrationTests.Deployment;

/// <summary>A minimal OTLP/HTTP receiver on 127.0.0.1: records every POST (path, content type, body) and
/// answers 200 with an empty protobuf body, as a collector does for a full success. No protobuf parsing: the
/// tests look for strings (service names, span names) in the encoded bodies, where protobuf keeps them verbatim.</summary>
public sealed class OtlpListener : IDisposable
{
    private readonly HttpListener _listener = new();
    private readonly Task _loop;

    public sealed record Request(string Path, string? ContentType, byte[] Body)
    {
        public string Text => Encoding.UTF8.GetString(Body);
    }

    public OtlpListener()
    {
        for (int attempt = 0; ; attempt++)
        {
            Port = Srlm.LocalBroker.RabbitMqBroker.FreePort();
            _listener.Prefixes.Clear();
            _listener.Prefixes.Add($"http://127.0.0.1:{Port}/");
            try { _listener.Start(); break; }
            catch (HttpListenerException) when (attempt < 5) { }
        }
        _loop = Task.Run(LoopAsync);
    }

    public int Port { get; }

    /// <summary>The value for OTEL_EXPORTER_OTLP_ENDPOINT (the base URL; the exporter adds /v1/traces).</summary>
    public string Endpoint => $"http://127.0.0.1:{Port}";

    public ConcurrentQueue<Request> Requests { get; } = new();

    private async Task LoopAsync()
    {
        while (_listener.IsListening)
        {
            HttpListenerContext context;
            try { context = await _listener.GetContextAsync(); }
            catch (Exception e) when (e is HttpListenerException or ObjectDisposedException or InvalidOperationException) { return; }
            try
            {
                using var body = new MemoryStream();
                await context.Request.InputStream.CopyToAsync(body);
                Requests.Enqueue(new Request(context.Request.Url!.AbsolutePath, context.Request.ContentType, body.ToArray()));
                context.Response.StatusCode = 200;
                context.Response.ContentType = "application/x-protobuf";
                context.Response.ContentLength64 = 0;
                context.Response.Close();
            }
            catch (Exception e) when (e is HttpListenerException or IOException) { }
        }
    }

    public void Dispose()
    {
        _listener.Stop();
        _listener.Close();
        try { _loop.Wait(TimeSpan.FromSeconds(5)); } catch (AggregateException) { }
    }
}
