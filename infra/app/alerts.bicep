// Backup alerts: log search rules over the Application Insights data the app emits (event contract in
// docs/deploy.md), notifying one action group by email.
param namePrefix string = 'alert-'
param actionGroupName string
param resourceToken string
param location string = resourceGroup().location
param tags object = {}
param applicationInsightsId string

@description('Email address that receives the alerts.')
param alertEmailAddress string

@minValue(1)
@maxValue(47)
@description('Hours without a successful backup after which an identity raises an alert.')
param expectedBackupIntervalHours int = 26

// The shared projection of BackupRunCompleted, spliced into each rule's query.
var backupRuns = loadTextContent('queries/backup-runs.kql')
var failedRunsQuery = replace(loadTextContent('queries/failed-runs.kql'), '{{BACKUP_RUNS}}', backupRuns)
var staleBackupsQuery = replace(
  replace(loadTextContent('queries/stale-backups.kql'), '{{BACKUP_RUNS}}', backupRuns),
  '{{EXPECTED_INTERVAL_HOURS}}',
  string(expectedBackupIntervalHours)
)

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: actionGroupName
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'arcgisbackup'
    enabled: true
    emailReceivers: [
      {
        name: 'backup-admin'
        emailAddress: alertEmailAddress
        useCommonAlertSchema: true
      }
    ]
  }
}

resource failedRunAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: '${namePrefix}backup-run-failed-${resourceToken}'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'ArcGIS backup run failed'
    description: 'A backup run ended with status failed or completed-with-failures (BackupRunCompleted event). One alert per identity and status in each 15-minute window.'
    severity: 2
    enabled: true
    scopes: [
      applicationInsightsId
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT15M'
    autoMitigate: false
    criteria: {
      allOf: [
        {
          query: failedRunsQuery
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          dimensions: [
            {
              name: 'identityName'
              operator: 'Include'
              values: [
                '*'
              ]
            }
            {
              name: 'status'
              operator: 'Include'
              values: [
                '*'
              ]
            }
          ]
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

resource staleBackupAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: '${namePrefix}backup-overdue-${resourceToken}'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'ArcGIS backup overdue'
    description: 'An identity has had no completed backup for more than ${expectedBackupIntervalHours} hours. Resolves by itself when a backup completes (or once the identity has not run at all for two days).'
    severity: 2
    enabled: true
    scopes: [
      applicationInsightsId
    ]
    evaluationFrequency: 'PT1H'
    windowSize: 'PT1H'
    overrideQueryTimeRange: 'P2D'
    autoMitigate: true
    criteria: {
      allOf: [
        {
          query: staleBackupsQuery
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          dimensions: [
            {
              name: 'identityId'
              operator: 'Include'
              values: [
                '*'
              ]
            }
            {
              name: 'identityName'
              operator: 'Include'
              values: [
                '*'
              ]
            }
          ]
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

output actionGroupId string = actionGroup.id
output failedRunAlertId string = failedRunAlert.id
output staleBackupAlertId string = staleBackupAlert.id
