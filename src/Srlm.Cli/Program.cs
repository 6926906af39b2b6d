// srlm: the command line. Verbs are added as the pieces they drive land.
using Srlm.Model;

if (args.Length == 0 || args[0] is "-h" or "--help")
{
    Console.WriteLine("usage: srlm <verb> [options]");
    return 0;
}
TorchRuntime.Initialise();
Console.Error.WriteLine($"srlm: unknown verb '{args[0]}'");
return 2;
