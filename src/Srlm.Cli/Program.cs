// srlm: the command line. Each verb is one ICommand in Commands/; this file only dispatches.
using Srlm.Cli;

return await CommandLine.RunAsync(args);
