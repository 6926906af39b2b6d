// srlm-faulthost: the host the fault-injection tests run instead of a production one, when a fault must be put in.
//   srlm-faulthost judge|trainer [--health]   the service exactly as srlm-judge / srlm-trainer compose it, plus the
//                                            faults that FaultOptions reads from the environment (SRLM_TEST_*)
//   srlm-faulthost cli ARGS...               srlm ARGS, its train verb stopping mid-job at SRLM_TEST_HANG_AFTER_STEP
// The production hosts have no such seam filled: no setting switches them into a faulty mode.
using Srlm.FaultHost;
using Srlm.Judge;
using Srlm.Messaging.Bus;
using Srlm.Messaging.Hosting;

FaultOptions faults;
try { faults = FaultOptions.FromEnvironment(Environment.GetEnvironmentVariable); }
catch (SrlmConfigurationException e)
{
    Console.Error.WriteLine($"srlm-faulthost: {e.Message}");
    return 2;
}
var rest = args.Skip(1).ToArray();
switch (args.FirstOrDefault())
{
    case "judge":
        return await SrlmHost.RunAsync(rest, "judge", builder =>
        {
            builder.Services.AddJudgeService(builder.Configuration);
            builder.Services.AddFaults(faults);
        });
    case "trainer":
        return await SrlmHost.RunAsync(rest, "trainer", builder =>
        {
            builder.Services.AddSrlmInfrastructure(builder.Configuration);
            builder.Services.AddSrlmBus(builder.Configuration, bus => bus.AddTrainerConsumers());
            builder.Services.AddTrainer(TrainingWorkerOptions.FromEnvironment(k => builder.Configuration[k]));
            builder.Services.AddFaults(faults);
        });
    case "cli":
        return await Srlm.Cli.CommandLine.RunAsync(rest, Srlm.Cli.CommandLine.Commands
            .Select(c => c is Srlm.Cli.Commands.TrainCommand ? new Srlm.Cli.Commands.TrainCommand(faults.HangTrainCommand) : c).ToList());
    default:
        Console.Error.WriteLine("usage: srlm-faulthost judge|trainer [--health] | srlm-faulthost cli ARGS...");
        return 2;
}
