// Host for the pairbuilder service. The service itself lives in the Srlm.PairBuilder library so that the same code runs
// in its own container or inside `srlm run`.
var builder = Host.CreateApplicationBuilder(args);
var host = builder.Build();
host.Run();
